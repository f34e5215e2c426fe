"""The command-line tool: the only part of segdl that prints."""
