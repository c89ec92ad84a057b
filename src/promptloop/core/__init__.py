"""Pure domain logic: kernels, templates, hashing, paths, prompt files. No I/O, no web, no SQL."""
