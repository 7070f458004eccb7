//! Registry operations on one storage: ids, versions, dedup, modes, deletion, errors.
