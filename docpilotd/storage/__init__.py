"""Storage: everything that puts sessions on disk and gets them back.

All file-system calls go through one seam, `fsops.FileOps`, so that tests can inject an error or a
crash at any single call, and a model file system can simulate power loss.
"""
