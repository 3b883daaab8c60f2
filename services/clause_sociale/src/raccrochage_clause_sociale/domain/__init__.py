"""Pure rules of the clause sociale de formation: clauses, missions, proposals, conventions, hours, bilans."""
