"""Management API of the catalog: custom providers and actions (`custom`) and OpenAPI import
jobs (`openapi`)."""
