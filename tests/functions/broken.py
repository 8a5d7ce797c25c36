"""A handler module that fails at import: the runtime reports an init error and exits."""

raise RuntimeError("this function cannot initialize")
