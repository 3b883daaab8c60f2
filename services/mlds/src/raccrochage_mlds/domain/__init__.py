"""The MLDS model, pure: catalogue, eligibility rules, candidacies from decision to exit, survey."""
