"""clause_sociale: buyers' clauses meet companies' missions and MLDS youths, up to the bilan croisé."""
