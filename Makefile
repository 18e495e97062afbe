# Thin wrappers around tasks.py (which needs only Python): the README's commands are the source of truth.
.PHONY: book test study execute setup pdf
book test study execute setup pdf:
	python3 tasks.py $@
