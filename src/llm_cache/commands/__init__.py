"""Sub-commands of the ``llm-cache`` CLI, one module each.

Every module here defines ``register(subparsers) -> None``, which adds its parser and sets
``handler=`` (a function taking the parsed ``argparse.Namespace`` and returning an exit
status). Modules are found by :func:`pkgutil.iter_modules`, so a new command is one new
file. Keep imports at module level light: import heavy dependencies inside the handler,
because every ``llm-cache`` invocation imports every command module.
"""
