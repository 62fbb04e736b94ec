-- Run once by the postgres image on an empty volume: Prefect's own database beside wikiref's.
CREATE DATABASE prefect OWNER wikiref;
