"""The disk: the .part file, the state file, the owner lock, the checkpointer, hashing."""
