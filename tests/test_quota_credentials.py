"""User credentials and Cloud Quotas' quota project (x-goog-user-project).

Cloud Quotas is a client-based API: with ``gcloud auth application-default login``
credentials and no quota project Google answers 403 "requires a quota project"
(docs/facts/cloud-quotas.md). The fake Cloud Quotas server answers the same when asked to;
the real google-cloud-quotas client and google-auth user credentials talk to it.
"""

from __future__ import annotations

import pytest
from google.auth import compute_engine
from google.oauth2.credentials import Credentials as UserCredentials

from gpuwizard.gcp import client as gclient
from gpuwizard.gcp import quotas_api
from gpuwizard.gcp.errors import ApiError
from gpuwizard.gcp.quota_explain import explain, fallback_line


def test_user_credentials_send_the_project_as_quota_project(fake_compute, fake_cloudquotas, monkeypatch):
    fake_cloudquotas.require_quota_project = True
    user = UserCredentials(token="user-token")
    monkeypatch.setattr(gclient, "credentials_and_project", lambda project: (user, "test-project"))
    monkeypatch.setenv(quotas_api.ENDPOINT_ENV, "https://cloudquotas.invalid")   # the real-Google path
    q = quotas_api.open_quotas("test-project")
    monkeypatch.setenv(quotas_api.ENDPOINT_ENV, fake_cloudquotas.url)           # ... answered by the fake
    assert q.quota_infos()
    sent = fake_cloudquotas.headers[-1]
    assert sent["authorization"] == "Bearer user-token"
    assert sent["x-goog-user-project"] == "test-project"
    assert user.quota_project_id is None    # the cached ADC credentials are not changed


def test_a_quota_project_from_adc_is_kept_and_other_credentials_are_left_alone():
    mine = UserCredentials(token="t", quota_project_id="billing-project")
    assert quotas_api.with_quota_project(mine, "test-project").quota_project_id == "billing-project"
    gce = compute_engine.Credentials()
    assert quotas_api.with_quota_project(gce, "test-project") is gce


def test_missing_quota_project_is_explained_not_called_a_disabled_api(fake_compute, fake_cloudquotas):
    fake_cloudquotas.require_quota_project = True
    q = quotas_api.CloudQuotas("test-project", UserCredentials(token="user-token"))
    with pytest.raises(ApiError) as ei:
        q.quota_infos()
    msg = str(explain(ei.value, "test-project", "reading GPU quotas", filing=False))
    assert "gcloud auth application-default set-quota-project test-project" in msg
    assert "not enabled" not in msg and "services enable" not in msg
    line = fallback_line(ei.value, "test-project")
    assert "set-quota-project test-project" in line and "not enabled" not in line
