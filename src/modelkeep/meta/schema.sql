CREATE TABLE artifacts (
	id INTEGER NOT NULL,
	name VARCHAR(128) NOT NULL,
	type VARCHAR(16) NOT NULL,
	created_at DATETIME NOT NULL,
	latest_number INTEGER DEFAULT '0' NOT NULL,
	registered BOOLEAN DEFAULT '0' NOT NULL,
	description TEXT DEFAULT '' NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE TABLE chain_head (
	id INTEGER NOT NULL,
	last_id INTEGER NOT NULL,
	last_hash VARCHAR(64) NOT NULL,
	last_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE database_identity (
	id VARCHAR(32) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE environments (
	id VARCHAR(64) NOT NULL,
	doc_json TEXT NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE events (
	id INTEGER NOT NULL,
	at DATETIME NOT NULL,
	actor VARCHAR(255) NOT NULL,
	action VARCHAR(32) NOT NULL,
	model VARCHAR(128) NOT NULL,
	target VARCHAR(160) NOT NULL,
	before_json TEXT NOT NULL,
	after_json TEXT NOT NULL,
	reason TEXT NOT NULL,
	prev_hash VARCHAR(64) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_events_at ON events (at);

CREATE INDEX ix_events_model ON events (model, target);

CREATE TABLE experiments (
	id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	lifecycle_stage VARCHAR(16) NOT NULL,
	artifact_location TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE TABLE mlflow_artifacts (
	path VARCHAR(1024) NOT NULL,
	digest VARCHAR(64) NOT NULL,
	size BIGINT NOT NULL,
	store_id VARCHAR(32),
	user VARCHAR(255) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (path)
);

CREATE INDEX ix_mlflow_artifacts_digest ON mlflow_artifacts (digest);

CREATE TABLE users (
	name VARCHAR(128) NOT NULL,
	admin BOOLEAN NOT NULL,
	disabled BOOLEAN NOT NULL,
	password_hash TEXT,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE webhooks (
	id INTEGER NOT NULL,
	url TEXT NOT NULL,
	events TEXT NOT NULL,
	model_glob VARCHAR(128) NOT NULL,
	secret_env VARCHAR(128),
	created_at DATETIME NOT NULL,
	removed_at DATETIME,
	PRIMARY KEY (id)
);

CREATE TABLE deliveries (
	id INTEGER NOT NULL,
	webhook_id INTEGER NOT NULL,
	kind VARCHAR(32) NOT NULL,
	payload_json TEXT NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	next_at DATETIME NOT NULL,
	last_error TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	delivered_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(webhook_id) REFERENCES webhooks (id)
);

CREATE INDEX ix_deliveries_due ON deliveries (status, next_at);

CREATE INDEX ix_deliveries_webhook_id ON deliveries (webhook_id);

CREATE TABLE experiment_tags (
	experiment_id INTEGER NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (experiment_id, "key"),
	FOREIGN KEY(experiment_id) REFERENCES experiments (id)
);

CREATE TABLE grants (
	user_name VARCHAR(128) NOT NULL,
	model_glob VARCHAR(128) NOT NULL,
	role VARCHAR(16) NOT NULL,
	PRIMARY KEY (user_name, model_glob),
	FOREIGN KEY(user_name) REFERENCES users (name)
);

CREATE TABLE model_tags (
	artifact_id INTEGER NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (artifact_id, "key"),
	FOREIGN KEY(artifact_id) REFERENCES artifacts (id)
);

CREATE TABLE runs (
	id VARCHAR(32) NOT NULL,
	name VARCHAR(255) NOT NULL,
	status VARCHAR(16) NOT NULL,
	user VARCHAR(255) NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	pid_started BIGINT,
	started_at DATETIME NOT NULL,
	heartbeat_at DATETIME NOT NULL,
	ended_at DATETIME,
	exit_code INTEGER,
	error TEXT NOT NULL,
	command_json TEXT NOT NULL,
	code_json TEXT NOT NULL,
	env_id VARCHAR(64),
	parent_id VARCHAR(32),
	note TEXT DEFAULT '' NOT NULL,
	deleted_at DATETIME,
	experiment_id INTEGER,
	PRIMARY KEY (id),
	FOREIGN KEY(env_id) REFERENCES environments (id),
	CONSTRAINT fk_runs_parent_id FOREIGN KEY(parent_id) REFERENCES runs (id),
	CONSTRAINT fk_runs_experiment_id FOREIGN KEY(experiment_id) REFERENCES experiments (id)
);

CREATE INDEX ix_runs_experiment_id ON runs (experiment_id);

CREATE INDEX ix_runs_name ON runs (name);

CREATE INDEX ix_runs_parent_id ON runs (parent_id);

CREATE INDEX ix_runs_started_at ON runs (started_at);

CREATE INDEX ix_runs_status ON runs (status);

CREATE TABLE tokens (
	id VARCHAR(16) NOT NULL,
	user_name VARCHAR(128) NOT NULL,
	label VARCHAR(128) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	expires_at DATETIME,
	revoked_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(user_name) REFERENCES users (name),
	UNIQUE (hash)
);

CREATE INDEX ix_tokens_user_name ON tokens (user_name);

CREATE TABLE logged_models (
	id VARCHAR(64) NOT NULL,
	experiment_id INTEGER,
	name VARCHAR(255) NOT NULL,
	run_id VARCHAR(32),
	status VARCHAR(16) NOT NULL,
	status_message TEXT DEFAULT '' NOT NULL,
	model_type VARCHAR(255) DEFAULT '' NOT NULL,
	source_run_id VARCHAR(32),
	user VARCHAR(255) NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	deleted_at DATETIME,
	params_json TEXT DEFAULT '{}' NOT NULL,
	tags_json TEXT DEFAULT '{}' NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(experiment_id) REFERENCES experiments (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_logged_models_experiment_id ON logged_models (experiment_id);

CREATE INDEX ix_logged_models_run_id ON logged_models (run_id);

CREATE TABLE metrics (
	id INTEGER NOT NULL,
	run_id VARCHAR(32) NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value FLOAT,
	step BIGINT NOT NULL,
	logged_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_metrics_run_key ON metrics (run_id, "key");

CREATE TABLE params (
	run_id VARCHAR(32) NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value_json TEXT NOT NULL,
	PRIMARY KEY (run_id, "key"),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE TABLE run_attachments (
	run_id VARCHAR(32) NOT NULL,
	name VARCHAR(255) NOT NULL,
	digest VARCHAR(64) NOT NULL,
	size BIGINT NOT NULL,
	created_at DATETIME NOT NULL,
	store_id VARCHAR(32),
	PRIMARY KEY (run_id, name),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_run_attachments_digest ON run_attachments (digest);

CREATE TABLE run_tags (
	run_id VARCHAR(32) NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (run_id, "key"),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE TABLE versions (
	id INTEGER NOT NULL,
	artifact_id INTEGER NOT NULL,
	number INTEGER NOT NULL,
	kind VARCHAR(8) NOT NULL,
	digest VARCHAR(64) NOT NULL,
	size BIGINT NOT NULL,
	file_count INTEGER NOT NULL,
	mode INTEGER NOT NULL,
	source_name BLOB NOT NULL,
	created_at DATETIME NOT NULL,
	user VARCHAR(255) NOT NULL,
	message TEXT NOT NULL,
	metadata_json TEXT NOT NULL,
	run_id VARCHAR(32),
	registered BOOLEAN DEFAULT '0' NOT NULL,
	stage VARCHAR(16) DEFAULT 'none' NOT NULL,
	stage_changed_at DATETIME,
	deleted_at DATETIME,
	host VARCHAR(255),
	store_id VARCHAR(32),
	description TEXT DEFAULT '' NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_versions_number UNIQUE (artifact_id, number),
	FOREIGN KEY(artifact_id) REFERENCES artifacts (id),
	CONSTRAINT fk_versions_run_id FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_versions_artifact_id ON versions (artifact_id);

CREATE INDEX ix_versions_digest ON versions (digest);

CREATE INDEX ix_versions_listing ON versions (artifact_id, registered, deleted_at);

CREATE INDEX ix_versions_run_id ON versions (run_id);

CREATE INDEX ix_versions_stage ON versions (artifact_id, stage);

CREATE INDEX ix_versions_stage_artifact ON versions (stage, artifact_id);

CREATE UNIQUE INDEX uq_versions_production ON versions (artifact_id) WHERE stage = 'production';

CREATE TABLE aliases (
	artifact_id INTEGER NOT NULL,
	alias VARCHAR(64) NOT NULL,
	version_id INTEGER NOT NULL,
	PRIMARY KEY (artifact_id, alias),
	FOREIGN KEY(artifact_id) REFERENCES artifacts (id),
	FOREIGN KEY(version_id) REFERENCES versions (id)
);

CREATE TABLE evaluations (
	id INTEGER NOT NULL,
	version_id INTEGER NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value FLOAT,
	dataset_id INTEGER,
	run_id VARCHAR(32),
	user VARCHAR(255) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(version_id) REFERENCES versions (id),
	FOREIGN KEY(dataset_id) REFERENCES versions (id),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE INDEX ix_evaluations_version_key ON evaluations (version_id, "key");

CREATE TABLE pushes (
	version_id INTEGER NOT NULL,
	remote VARCHAR(1024) NOT NULL,
	pushed_at DATETIME NOT NULL,
	host VARCHAR(255) NOT NULL,
	PRIMARY KEY (version_id, remote),
	FOREIGN KEY(version_id) REFERENCES versions (id)
);

CREATE TABLE run_inputs (
	run_id VARCHAR(32) NOT NULL,
	version_id INTEGER NOT NULL,
	PRIMARY KEY (run_id, version_id),
	FOREIGN KEY(run_id) REFERENCES runs (id),
	FOREIGN KEY(version_id) REFERENCES versions (id)
);

CREATE INDEX ix_run_inputs_version_id ON run_inputs (version_id);

CREATE TABLE run_outputs (
	run_id VARCHAR(32) NOT NULL,
	version_id INTEGER NOT NULL,
	PRIMARY KEY (run_id, version_id),
	FOREIGN KEY(run_id) REFERENCES runs (id),
	FOREIGN KEY(version_id) REFERENCES versions (id)
);

CREATE TABLE version_tags (
	version_id INTEGER NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (version_id, "key"),
	FOREIGN KEY(version_id) REFERENCES versions (id)
);

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
