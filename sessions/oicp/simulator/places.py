"""Where the simulated charging stations stand: countries, cities, streets and the places drivers name.

Plain data for `network`: real cities with real postal codes and their centre's coordinates, streets
as each country spells them (umlauts and accents included), and the venues a driver says on the phone
("the Lidl car park on Hauptstraße in Köln"). A venue's kind decides how the station is reached, when
it is open and whether it charges fast.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    postal_codes: tuple[str, ...]
    latitude: float
    longitude: float
    region: str


@dataclass(frozen=True)
class Venue:
    name: str
    kind: str  # a key of VENUE_KINDS


@dataclass(frozen=True)
class VenueKind:
    accessibility: str  # OICP AccessibilityType
    location: str  # OICP AccessibilityLocation
    hours: tuple[tuple[str, str, str], ...]  # OpeningTimes (on, begin, end); empty: open 24 hours
    fast: float  # the share of its stations with DC fast chargers
    parking_facility: bool


VENUE_KINDS: dict[str, VenueKind] = {
    "supermarket": VenueKind(
        "Free publicly accessible",
        "ParkingLot",
        (("Workdays", "07:00", "22:00"), ("Saturday", "07:00", "21:00")),
        0.3,
        True,
    ),
    "garage": VenueKind("Paying publicly accessible", "ParkingGarage", (), 0.1, True),
    "underground": VenueKind("Paying publicly accessible", "UndergroundParkingGarage", (), 0.0, True),
    "street": VenueKind("Free publicly accessible", "OnStreet", (), 0.05, False),
    "highway": VenueKind("Free publicly accessible", "ParkingLot", (), 1.0, True),
    "hotel": VenueKind("Free publicly accessible", "ParkingLot", (), 0.2, True),
    "campus": VenueKind("Restricted access", "ParkingLot", (("Workdays", "06:00", "20:00"),), 0.0, True),
    "store": VenueKind("Free publicly accessible", "ParkingLot", (("Workdays", "09:00", "20:00"),), 0.5, True),
}


@dataclass(frozen=True)
class Country:
    alpha2: str
    alpha3: str  # OICP 2.3 Address.Country is ISO 3166-1 alpha-3
    dial: str  # for hotline numbers: +<dial>...
    lang: str  # ChargingStationNames' language
    time_zone: str  # Address.TimeZone
    house_first: bool  # "12 Rue de la Paix" (FR, BE-fr, IT) or "Hauptstraße 12"
    cities: tuple[City, ...]
    streets: tuple[str, ...]
    venues: tuple[Venue, ...]


def _venues(*pairs: tuple[str, str]) -> tuple[Venue, ...]:
    return tuple(Venue(name, kind) for name, kind in pairs)


COUNTRIES: dict[str, Country] = {
    "DE": Country(
        "DE",
        "DEU",
        "49",
        "de",
        "UTC+01:00",
        False,
        (
            City("Köln", ("50667", "50672", "50733", "50823", "51063"), 50.937531, 6.960279, "Nordrhein-Westfalen"),
            City("Berlin", ("10115", "10243", "10829", "12043", "13353"), 52.520008, 13.404954, "Berlin"),
            City("München", ("80331", "80469", "80802", "81369", "81675"), 48.137154, 11.576124, "Bayern"),
            City("Hamburg", ("20095", "20354", "22083", "22767"), 53.551086, 9.993682, "Hamburg"),
            City("Düsseldorf", ("40210", "40213", "40474", "40591"), 51.227741, 6.773456, "Nordrhein-Westfalen"),
            City("Frankfurt am Main", ("60311", "60313", "60486", "65929"), 50.110924, 8.682127, "Hessen"),
            City("Stuttgart", ("70173", "70178", "70372", "70565"), 48.775845, 9.182932, "Baden-Württemberg"),
            City("Nürnberg", ("90402", "90403", "90429", "90473"), 49.452103, 11.076665, "Bayern"),
            City("Würzburg", ("97070", "97072", "97080", "97084"), 49.791304, 9.953355, "Bayern"),
            City("Lüneburg", ("21335", "21337", "21339"), 53.248706, 10.407855, "Niedersachsen"),
            City("Leipzig", ("04103", "04109", "04229", "04318"), 51.339695, 12.373075, "Sachsen"),
            City("Göttingen", ("37073", "37075", "37081", "37083"), 51.541280, 9.915804, "Niedersachsen"),
        ),
        (
            "Hauptstraße",
            "Bahnhofstraße",
            "Schloßallee",
            "Königstraße",
            "Gartenstraße",
            "Lindenstraße",
            "Mühlenweg",
            "Friedrich-Ebert-Straße",
            "Am Marktplatz",
            "Düsseldorfer Straße",
            "Große Straße",
            "Rüdesheimer Platz",
        ),
        _venues(
            ("Lidl Parkplatz", "supermarket"),
            ("REWE Parkplatz", "supermarket"),
            ("ALDI SÜD Parkplatz", "supermarket"),
            ("EDEKA Markt", "supermarket"),
            ("Kaufland Parkdeck", "supermarket"),
            ("Parkhaus Altstadt", "garage"),
            ("Tiefgarage am Rathaus", "underground"),
            ("Autohof", "highway"),
            ("Rasthof Süd", "highway"),
            ("Hotel zur Post", "hotel"),
            ("IKEA Einrichtungshaus", "store"),
            ("Technologiepark", "campus"),
            ("Ladepunkt", "street"),
            ("Stadtwerke Ladesäule", "street"),
        ),
    ),
    "AT": Country(
        "AT",
        "AUT",
        "43",
        "de",
        "UTC+01:00",
        False,
        (
            City("Wien", ("1010", "1030", "1100", "1210"), 48.208176, 16.373819, "Wien"),
            City("Graz", ("8010", "8020", "8055"), 47.070713, 15.439504, "Steiermark"),
            City("Linz", ("4020", "4030", "4040"), 48.306940, 14.285830, "Oberösterreich"),
            City("Salzburg", ("5020", "5023", "5026"), 47.809490, 13.055010, "Salzburg"),
            City("Innsbruck", ("6020", "6060"), 47.269212, 11.404102, "Tirol"),
        ),
        (
            "Mariahilfer Straße",
            "Hauptplatz",
            "Landstraßer Hauptstraße",
            "Bahnhofstraße",
            "Kärntner Straße",
            "Museumstraße",
            "Grünwaldweg",
        ),
        _venues(
            ("BILLA Parkplatz", "supermarket"),
            ("SPAR Markt", "supermarket"),
            ("HOFER Parkplatz", "supermarket"),
            ("Garage am Hauptbahnhof", "garage"),
            ("Tiefgarage Mönchsberg", "underground"),
            ("Raststation", "highway"),
            ("Gasthof zum Hirschen", "hotel"),
            ("Ladestation", "street"),
        ),
    ),
    "FR": Country(
        "FR",
        "FRA",
        "33",
        "fr",
        "UTC+01:00",
        True,
        (
            City("Paris", ("75001", "75011", "75015", "75019"), 48.856613, 2.352222, "Île-de-France"),
            City("Lyon", ("69001", "69002", "69003", "69007"), 45.764043, 4.835659, "Auvergne-Rhône-Alpes"),
            City("Marseille", ("13001", "13006", "13008"), 43.296482, 5.369780, "Provence-Alpes-Côte d'Azur"),
            City("Strasbourg", ("67000", "67100", "67200"), 48.573405, 7.752111, "Grand Est"),
            City("Lille", ("59000", "59800", "59160"), 50.629250, 3.057256, "Hauts-de-France"),
            City("Orléans", ("45000", "45100"), 47.902964, 1.909251, "Centre-Val de Loire"),
        ),
        (
            "Rue de la République",
            "Avenue des Champs-Élysées",
            "Boulevard Saint-Michel",
            "Rue Victor Hugo",
            "Place de la Gare",
            "Rue du Général de Gaulle",
            "Chemin des Prés",
            "Quai Saint-Étienne",
        ),
        _venues(
            ("Carrefour Parking", "supermarket"),
            ("Leclerc Drive", "supermarket"),
            ("Intermarché", "supermarket"),
            ("Parking Indigo", "garage"),
            ("Parking souterrain Hôtel de Ville", "underground"),
            ("Aire de service", "highway"),
            ("Hôtel du Théâtre", "hotel"),
            ("Borne de recharge", "street"),
        ),
    ),
    "NL": Country(
        "NL",
        "NLD",
        "31",
        "nl",
        "UTC+01:00",
        False,
        (
            City("Amsterdam", ("1012 JS", "1017 GC", "1071 XX", "1091 GT"), 52.367573, 4.904139, "Noord-Holland"),
            City("Rotterdam", ("3011 AD", "3012 CL", "3071 KH"), 51.924420, 4.477733, "Zuid-Holland"),
            City("Utrecht", ("3511 LX", "3512 JE", "3581 KD"), 52.090737, 5.121420, "Utrecht"),
            City("Den Haag", ("2511 CV", "2514 JH", "2595 AA"), 52.070498, 4.300700, "Zuid-Holland"),
            City("Eindhoven", ("5611 AZ", "5612 AJ", "5622 HM"), 51.441642, 5.469722, "Noord-Brabant"),
        ),
        ("Kerkstraat", "Stationsplein", "Prinsengracht", "Dorpsstraat", "Molenweg", "Julianalaan", "Hoogstraat"),
        _venues(
            ("Albert Heijn Parkeerplaats", "supermarket"),
            ("Jumbo Parkeerplaats", "supermarket"),
            ("Q-Park", "garage"),
            ("Parkeergarage Centrum", "underground"),
            ("Tankstation", "highway"),
            ("Laadpaal", "street"),
            ("Laadpaal gemeente", "street"),
        ),
    ),
    "BE": Country(
        "BE",
        "BEL",
        "32",
        "nl",
        "UTC+01:00",
        False,
        (
            City("Antwerpen", ("2000", "2018", "2060"), 51.219448, 4.402464, "Vlaanderen"),
            City("Gent", ("9000", "9030", "9050"), 51.054342, 3.717424, "Vlaanderen"),
            City("Brussel", ("1000", "1040", "1050"), 50.850346, 4.351721, "Brussels Hoofdstedelijk Gewest"),
        ),
        ("Meir", "Korenmarkt", "Stationsstraat", "Kerkplein", "Nieuwstraat"),
        _venues(
            ("Delhaize Parking", "supermarket"),
            ("Colruyt Parking", "supermarket"),
            ("Interparking", "garage"),
            ("Laadpaal", "street"),
        ),
    ),
    "CH": Country(
        "CH",
        "CHE",
        "41",
        "de",
        "UTC+01:00",
        False,
        (
            City("Zürich", ("8001", "8004", "8050"), 47.376888, 8.541694, "Zürich"),
            City("Bern", ("3011", "3013", "3027"), 46.947975, 7.447447, "Bern"),
            City("Basel", ("4051", "4056", "4058"), 47.559601, 7.588576, "Basel-Stadt"),
        ),
        ("Bahnhofstrasse", "Marktgasse", "Seestrasse", "Dorfstrasse", "Zürichstrasse"),
        _venues(
            ("Migros Parkplatz", "supermarket"),
            ("Coop Parkplatz", "supermarket"),
            ("Parkhaus City", "garage"),
            ("Raststätte", "highway"),
            ("Ladestation", "street"),
        ),
    ),
    "IT": Country(
        "IT",
        "ITA",
        "39",
        "it",
        "UTC+01:00",
        True,
        (
            City("Milano", ("20121", "20123", "20135"), 45.464203, 9.189982, "Lombardia"),
            City("Bolzano", ("39100",), 46.498295, 11.354758, "Trentino-Alto Adige"),
            City("Verona", ("37121", "37122", "37138"), 45.438384, 10.991622, "Veneto"),
        ),
        ("Via Roma", "Corso Venezia", "Piazza del Duomo", "Via Giuseppe Garibaldi", "Viale della Stazione"),
        _venues(
            ("Esselunga Parcheggio", "supermarket"),
            ("Parcheggio Centrale", "garage"),
            ("Area di servizio", "highway"),
            ("Colonnina di ricarica", "street"),
        ),
    ),
}

HARDWARE_MANUFACTURERS = ("ABB", "Alpitronic", "Compleo", "Mennekes", "Kempower", "Siemens", "Delta", "Ebee")
