"""Retrieval: base documents (chunked, embedded once per content and model), the vector index
(exact numpy search over a growing matrix, an optional approximate index), search over this
run, past runs and the documents, and the novelty guard of generating nodes.

Nothing here imports torch: vectors come from models through the executor's invocations (the
`retrieve` node) or the model cache (`genarun search`).
"""
