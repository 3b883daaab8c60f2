"""MLDS: dispositifs (PAPS, DIPA, micro-lycée), eligibility with reasons, admission, enrolment to exit, survey."""
