//! Service bootstrap shared by every service: configuration, gRPC serving with health and reflection, graceful shutdown, logging.
