#!/bin/sh
# Runs init.sql once, when the postgres container initialises its data, with each service role's
# password taken from the environment (RACCROCHAGE_PG_PASSWORD_<NAME>, set in docker-compose.yml).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v reperage_password="$RACCROCHAGE_PG_PASSWORD_REPERAGE" \
  -v psad_password="$RACCROCHAGE_PG_PASSWORD_PSAD" \
  -v foquale_password="$RACCROCHAGE_PG_PASSWORD_FOQUALE" \
  -v mlds_password="$RACCROCHAGE_PG_PASSWORD_MLDS" \
  -v clause_sociale_password="$RACCROCHAGE_PG_PASSWORD_CLAUSE_SOCIALE" \
  -v ops_password="$RACCROCHAGE_PG_PASSWORD_OPS" \
  -f /etc/raccrochage/init.sql
