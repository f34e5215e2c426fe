"""Running downloads: one download, one attempt and its workers, batches."""
