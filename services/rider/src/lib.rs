//! The rider service: the open-call board, the accept race, pick-up and completion with settlement.
