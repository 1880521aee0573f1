//! End-to-end test harness: real nats-server and databases
