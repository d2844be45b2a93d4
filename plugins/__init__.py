"""plugnet's built-in plugins, one module per component family.

Each module uses only ``framework``'s public API, exactly as a third-party plugin would.
"""
