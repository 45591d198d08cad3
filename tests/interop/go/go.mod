module signoff/tests/interop/go

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
	signoff/clients/go v0.0.0
)

// The client is not published: use the one in this repository.
replace signoff/clients/go => ../../../clients/go
