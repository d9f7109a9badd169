"""Small request helpers shared by the tests."""


def poll(client, body, status=200, route="/mlflow/runs"):
    """POST ``body`` with a Flask test client; the response, after checking its status."""
    response = client.post(route, json=body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response
