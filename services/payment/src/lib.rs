//! The payment service: fee registration, settlement with commission, voiding.
