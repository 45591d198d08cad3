"""Use cases. Each public function is one RPC's work in one transaction."""
