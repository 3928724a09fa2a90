"""Running a sweep: the run loop, the trainable, recovery from torn snapshots, local Ray, storage, code shipping."""
