"""One service module per resource; each public function owns its transaction."""
