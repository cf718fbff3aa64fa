//! Who may touch money (BOLA for payment): fees are registered, settled and voided only by the mesh
//! itself (the call and rider services, signing as role `service`, or an unsigned internal backend
//! where identity is not required); a person never writes, whatever their role. Payments are read by
//! the company.

use baemin_mesh_server::identity::Caller;
use tonic::Request;

use crate::domain::PaymentError;

/// RegisterCost, Settle, VoidCost: only the mesh's own callers.
pub fn ensure_mesh<T>(request: &Request<T>) -> Result<(), PaymentError> {
    let caller = Caller::of(request);
    if caller.is_mesh() {
        Ok(())
    } else {
        Err(PaymentError::Forbidden(format!(
            "{} may not change payments: only the mesh's services do",
            who(&caller)
        )))
    }
}

/// GetPayment: the mesh and the company's staff.
pub fn ensure_company<T>(request: &Request<T>) -> Result<(), PaymentError> {
    let caller = Caller::of(request);
    if caller.is_company() {
        Ok(())
    } else {
        Err(PaymentError::Forbidden(format!(
            "{} may not read payments",
            who(&caller)
        )))
    }
}

fn who(caller: &Caller) -> String {
    match caller {
        Caller::Internal => "an internal caller".into(),
        Caller::Service(s) => format!("service {s}"),
        Caller::Admin(s) => format!("admin {s}"),
        Caller::Restaurant(s) => format!("restaurant {s}"),
        Caller::Rider(s) => format!("rider {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_caller(caller: Caller) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(caller);
        request
    }

    #[test]
    fn only_the_mesh_writes_money_and_people_never_do_whatever_their_role() {
        assert!(ensure_mesh(&Request::new(())).is_ok());
        assert!(ensure_mesh(&as_caller(Caller::Service("call".into()))).is_ok());
        for person in [
            Caller::Admin("ops".into()),
            Caller::of_role(baemin_mesh_server::identity::Role::Restaurant, "store-1").unwrap(),
            Caller::of_role(baemin_mesh_server::identity::Role::Rider, "r-1").unwrap(),
        ] {
            assert!(matches!(
                ensure_mesh(&as_caller(person)),
                Err(PaymentError::Forbidden(_))
            ));
        }
        assert!(ensure_company(&as_caller(Caller::Admin("ops".into()))).is_ok());
        let rider = Caller::of_role(baemin_mesh_server::identity::Role::Rider, "r-1").unwrap();
        assert!(ensure_company(&as_caller(rider)).is_err());
    }
}
