"""The advisor's one error type: bad input to fit, predict or recommend, said in one line."""


class AdvisorError(ValueError):
    """Raised for invalid runs files, costs, budgets or other input; the message names the problem."""
