//! The call service: restaurants place calls, the fee is registered with payment, the call follows the delivery.
