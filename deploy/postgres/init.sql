-- PostgreSQL init for docker-compose: one role and one database per service (deploy/topology.toml),
-- each role able to connect to its own database only.
-- Run by init.sh, which passes each role's password as a psql variable (:'<name>_password') from
-- the environment (RACCROCHAGE_PG_PASSWORD_<NAME>): no password is written in this repository.
-- CONNECT is granted to PUBLIC by default: revoking it is what keeps psad out of reperage's
-- identity vault. The owner could connect anyway; the explicit GRANT says who may.

CREATE ROLE reperage LOGIN PASSWORD :'reperage_password';
CREATE DATABASE reperage OWNER reperage;
REVOKE CONNECT ON DATABASE reperage FROM PUBLIC;
GRANT CONNECT ON DATABASE reperage TO reperage;

CREATE ROLE psad LOGIN PASSWORD :'psad_password';
CREATE DATABASE psad OWNER psad;
REVOKE CONNECT ON DATABASE psad FROM PUBLIC;
GRANT CONNECT ON DATABASE psad TO psad;

CREATE ROLE foquale LOGIN PASSWORD :'foquale_password';
CREATE DATABASE foquale OWNER foquale;
REVOKE CONNECT ON DATABASE foquale FROM PUBLIC;
GRANT CONNECT ON DATABASE foquale TO foquale;

CREATE ROLE mlds LOGIN PASSWORD :'mlds_password';
CREATE DATABASE mlds OWNER mlds;
REVOKE CONNECT ON DATABASE mlds FROM PUBLIC;
GRANT CONNECT ON DATABASE mlds TO mlds;

CREATE ROLE clause_sociale LOGIN PASSWORD :'clause_sociale_password';
CREATE DATABASE clause_sociale OWNER clause_sociale;
REVOKE CONNECT ON DATABASE clause_sociale FROM PUBLIC;
GRANT CONNECT ON DATABASE clause_sociale TO clause_sociale;

CREATE ROLE ops LOGIN PASSWORD :'ops_password';
CREATE DATABASE ops OWNER ops;
REVOKE CONNECT ON DATABASE ops FROM PUBLIC;
GRANT CONNECT ON DATABASE ops TO ops;

-- The stock databases are open to PUBLIC as well; no service has business there.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;

-- JIT off for every service role, as the services also ask on each connection
-- (raccrochage_platform.db.server_settings): a connection pooler that drops startup parameters
-- (PgBouncer without ignore_startup_parameters) would otherwise leave PostgreSQL compiling, at
-- every execution, statements whose estimated cost is high on a table not analyzed since it grew
-- (PSAD's 500-youth insert: 252 ms of compilation for 4 ms of work, docs/psad.md).
ALTER ROLE reperage SET jit = off;
ALTER ROLE psad SET jit = off;
ALTER ROLE foquale SET jit = off;
ALTER ROLE mlds SET jit = off;
ALTER ROLE clause_sociale SET jit = off;
ALTER ROLE ops SET jit = off;
