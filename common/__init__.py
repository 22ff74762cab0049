"""Code shared by every function. faas-cli copies this folder into each function's handler folder
(`configuration.copy` in stack.yml), so in the container it is the package `function.common`."""
