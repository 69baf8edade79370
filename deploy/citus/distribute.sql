-- Distribute the YWMessaging schema over a Citus cluster, sharded by church.
--
-- Run once, on the Citus coordinator, after `ywm migrate` has built the schema there and
-- before the application writes to it (docs/scaling.md says when and how):
--   psql "$YWM_MIGRATE_DATABASE_URL" -v ON_ERROR_STOP=1 -1 -f deploy/citus/distribute.sql
--
-- Every tenant table is hash-distributed on church_id and colocated with `churches` (itself
-- distributed on its id), so one church's rows of every table live on the same node: a
-- request's transaction, its joins (all on church_id, tests/db/test_citus_rules.py) and its
-- foreign keys stay on one node. Partitioned tables are distributed with their monthly
-- partitions; partitions created later (db/partitions.py) are distributed by Citus itself.
--
-- tests/db/test_citus_rules.py reads this file and checks it against the live schema on
-- plain PostgreSQL: every table named here exists and every table is named here, keys of
-- distributed tables include the distribution column, foreign keys are colocated, and the
-- queries in db/queries/ join tenant tables on church_id.

-- Reference tables (a full copy on every node) may not reference distributed tables. These
-- foreign keys to `churches` go first; the application never deletes a church, so nothing
-- relied on their ON DELETE CASCADE.
ALTER TABLE users DROP CONSTRAINT fk_users_church_id_churches;
ALTER TABLE numbers DROP CONSTRAINT fk_numbers_church_id_churches;
ALTER TABLE api_keys DROP CONSTRAINT fk_api_keys_church_id_churches;

-- The tenants themselves: the colocation group every tenant table joins.
SELECT create_distributed_table('churches', 'id');

-- Shared tables, read before the church is known, with a key unique across churches:
-- users (sign-in by email), numbers (inbound routing by phone), api_keys (the key's
-- public prefix). Small and rarely written, so a copy on every node is cheap.
SELECT create_reference_table('users');
SELECT create_reference_table('numbers');
SELECT create_reference_table('api_keys');

-- Inbound dedupe rows are written for every carrier webhook before its church is known,
-- so not a tenant table; a reference table would make every webhook write to every node.
-- Distributed on its own key instead, in a colocation group of its own.
SELECT create_distributed_table('inbound_dedupe', 'provider_event_id', colocate_with => 'none');

-- Tenant tables: church_id leads every primary key, unique constraint and index.
SELECT create_distributed_table('members', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('groups', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('group_memberships', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('messages', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('message_recipients', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('conversations', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('conversation_messages', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('events', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('early_receipts', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('consent_ledger', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('recurring_messages', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('recurring_runs', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('webhook_endpoints', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('webhook_deliveries', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('dead_letters', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('idempotency_keys', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('archive_batches', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('conversation_notes', 'church_id', colocate_with => 'churches');
SELECT create_distributed_table('message_templates', 'church_id', colocate_with => 'churches');

-- alembic_version stays a local table on the coordinator: only `ywm migrate` reads it.
