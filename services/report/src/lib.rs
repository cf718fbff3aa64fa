//! The report service: the company's deliverylist and stats, projected from every event (CQRS).
