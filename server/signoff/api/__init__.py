"""gRPC servicers: validate, translate proto <-> domain, map errors. No business rules here."""
