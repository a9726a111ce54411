"""What stage0 and every stage1 share (rkt's common/): pure data and readers."""
