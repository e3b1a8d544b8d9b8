//! redis-server and nats-server started on free loopback ports for one test, stopped by PID: the
//! shared implementation in `streammachine-testkit`.

pub use streammachine_testkit::{Service, free_port};
