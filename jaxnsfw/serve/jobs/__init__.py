"""Asynchronous jobs: `store` keeps them (SQLite plus a folder per job), `runner` runs them one at a
time in a thread, `kinds` says what each kind of job does."""
