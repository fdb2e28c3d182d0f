-- The register database for cstatns (docs/identity.md), run once by the
-- database's administrator: `psql -v ON_ERROR_STOP=1 -f register-postgres.sql`.
--
-- Two roles, each with its own password (set them with psql's \password,
-- never in this file): the loader, which owns the `register` schema and
-- replaces the register whole (`cstatns register load --database`), and the
-- service, which may only read it. Nobody else may connect. Only TLS
-- connections with a password (SCRAM) should be allowed in pg_hba.conf:
--   hostssl rnipp cstatns_loader,cstatns_service 10.0.0.0/24 scram-sha-256
CREATE ROLE cstatns_loader LOGIN;
CREATE ROLE cstatns_service LOGIN;
CREATE DATABASE rnipp OWNER cstatns_loader ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE rnipp FROM PUBLIC;
GRANT CONNECT ON DATABASE rnipp TO cstatns_loader, cstatns_service;
\connect rnipp
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA register AUTHORIZATION cstatns_loader;
GRANT USAGE ON SCHEMA register TO cstatns_service;
-- Every table the loader makes (each load makes a new one) is readable by
-- the service, and by it alone.
ALTER DEFAULT PRIVILEGES FOR ROLE cstatns_loader IN SCHEMA register
    GRANT SELECT ON TABLES TO cstatns_service;
