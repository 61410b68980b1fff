# The two commands a new user needs: `make run` and `make test`.
.PHONY: run test test-fast lint bootstrap clean bench

run:            ## install what is missing, then run the whole portal (Ctrl-C stops it)
	@scripts/bootstrap.sh run
	@.venv/bin/python scripts/run.py

test:           ## install what is missing, check format, lint and import contracts, then run the whole suite
	@scripts/bootstrap.sh test
	@scripts/lint.sh
	@scripts/test.sh

lint:           ## format check, lint and import contracts only (seconds)
	@scripts/bootstrap.sh test
	@scripts/lint.sh

test-fast:      ## unit tests only: no Redis, worker or browser
	@scripts/bootstrap.sh test
	@.venv/bin/pytest -m "not integration and not browser"

bench:          ## install what is missing, run every benchmark, write bench/RESULTS.md (never fails; ~50 min on 2 cores)
	@scripts/bootstrap.sh test
	@.venv/bin/python -m bench.run

clean:          ## remove the virtualenv, the demo database and runtime files
	rm -rf .venv var db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles
