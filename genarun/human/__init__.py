"""Human steps: the answer schema of a question, and how an answer is read and tallied."""
