"""Things to do with embeddings: evaluation now; duplicates, clusters, labels and maps later."""
