"""Deterministic train / validation / test assignment by hashing a key (stable across runs, machines, Python).

    hash_split('Gen.1', buckets=20)   # 'train' (18 of 20 buckets), 'validation' (1) or 'test' (1)

Every corpus keys it by what must not straddle splits: a Bible chapter, an English message, a sentence id, a family
of package descriptions.
"""

from __future__ import annotations

import hashlib


def hash_split(key: str, buckets: int) -> str:
  """'test' for hash bucket 0, 'validation' for bucket 1, 'train' for the other buckets - 2 (MD5 of UTF-8 `key`)."""
  bucket = int(hashlib.md5(key.encode('utf-8')).hexdigest(), 16) % buckets
  return 'test' if bucket == 0 else 'validation' if bucket == 1 else 'train'
