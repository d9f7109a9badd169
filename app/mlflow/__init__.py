"""Everything that talks to MLflow: where and as whom (``target``), one request's HTTP
calls (``transport``), the endpoints (``api``), fetching many histories at once
(``histories``), what MLflow's answers must look like (``shapes``, ``records``) and what
can go wrong (``errors``, in the words of ``wording``). Nothing here knows our HTTP
statuses: app/errors.py maps ``errors`` to them.
"""
