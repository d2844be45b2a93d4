"""What the tests expect of a refused command: exit status 2 and one line on stderr."""

from framework.cli import main


def cli_error(capsys, *args):
    """Run ``plugnet ARGS``; check it was refused cleanly (status 2, one ``plugnet: error:``
    line, no traceback) and return that line."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("plugnet: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err
