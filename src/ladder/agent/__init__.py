"""Agent role: the local proxy front, exit selection, the exit, the link to the hub."""
