"""Pod directories: rkt's phase directories, flock-based states, prepare, list/status and gc."""
