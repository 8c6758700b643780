"""Small guest programs for the tests, assembled with keystone at test time."""
