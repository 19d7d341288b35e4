import pytest
from kubernetes import client, config

from loadtest.clusters import Cluster


@pytest.fixture(scope="session")
def k8s(loadtest_cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(
        config_file=str(loadtest_cluster.kubeconfig), context=loadtest_cluster.context
    )
