//! Balancer.
