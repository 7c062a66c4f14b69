#!/usr/bin/env bash
# Start the Debian PostgreSQL cluster and make a `lossradar_test` database for the tests.
# Prints the URL to export as LOSSRADAR_TEST_POSTGRES_URL. Idempotent.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$ver main"; then
    pg_createcluster "$ver" main >/dev/null
fi
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true  # "already running" is fine
for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done
pg_isready -q -h 127.0.0.1 -p 5432
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lossradar') THEN
    CREATE ROLE lossradar LOGIN SUPERUSER PASSWORD 'lossradar';
  END IF;
END $$;
SQL
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='lossradar_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O lossradar lossradar_test"
echo "postgresql+psycopg://lossradar:lossradar@127.0.0.1:5432/lossradar_test"
