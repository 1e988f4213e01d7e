"""Developer tools that act through the same topics as the real system."""
