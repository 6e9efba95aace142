"""Settings pages for administrators: users (users.py), the audit trail (audit.py),
the keys review (review.py), alerts (alerts.py).

The same shape as the other pages: a GET renders; a form posts and, when the change is
made, redirects with a ``notice``; a refused change renders the page again (invalid
input: the status the REST API's routes for the same thing answer, 400 for users and 422
for alert rules; 409 for a conflict) with the service's message next to the form that
failed and the values that were entered (never a password).
"""
